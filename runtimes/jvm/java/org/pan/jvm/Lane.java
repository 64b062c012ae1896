package org.pan.jvm;

import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.IntBuffer;
import java.util.Arrays;
import org.pan.pni.PanCode;

/**
 * The dispatcher one runtime instance calls into: one JNI crossing per capsule (or per batch)
 * runs a code object's accept on a body held in a pre-registered direct ByteBuffer, under
 * the watchdog's time and allocation budget, and turns every Throwable into a fault record
 * instead of an exception. Calls on one lane come from one thread at a time.
 *
 * <p>Every entry point has the same shape: enter() inside the try, the catch handler only
 * keeps the Throwable, and leave() classifies it inside its own retry loop. A watchdog stop
 * (a ThreadDeath) may arrive at any safepoint poll or VM transition while the call is active,
 * including in the lane's own bookkeeping, so every such point is inside a try; leave() does
 * not return before each stop issued for the call has arrived or is known to be absorbed.
 *
 * <p>The door: a stop is only ever issued while the thread runs Java code under the lane. A
 * host call (the code calling the node's Python PniServer through HostGuard) closes the door
 * first (hostEnter: no stop is issued while it is closed, and one issued before is collected
 * there, in Java) and opens it on return (hostLeave: a call past its budget is stopped right
 * there). A lane call nested in a host call (a dependency's export) opens the door while it
 * runs and closes it again, collecting its stops, before it returns to the host. So no stop
 * is ever pending while the thread is in JPype or Python, where it would be thrown inside
 * JPype's own machinery.
 */
public final class Lane {
    /** Result of a call that faulted; the fault is in faultKind()/faultMessage(). */
    public static final int FAULT = Integer.MIN_VALUE;
    public static final long FAULT_LONG = Long.MIN_VALUE;

    public static final int F_NONE = 0;
    public static final int F_TIME = 1;
    public static final int F_MEMORY = 2;
    public static final int F_OOM = 3;
    public static final int F_STACK = 4;
    public static final int F_EXCEPTION = 5;
    public static final int F_LINK = 6;
    public static final int F_ENTRY = 7;
    public static final int F_INIT = 8;
    public static final int F_VERDICT = 9;
    /** A stop arrived that no watchdog issued for this call (not the code's fault). */
    public static final int F_STALE = 10;

    /**
     * VM transitions leave() makes to collect a stop the watchdog issued. Thread.stop installs
     * the ThreadDeath synchronously (a handshake) before the watchdog releases the lock, and a
     * pending one is thrown on return from any native call, so one transition suffices; the
     * rest cover a delivery the VM defers. Counted in transitions, not time: load cannot beat it.
     */
    static final int DRAIN_TRANSITIONS = 16;
    /** Throwables leave() classifies before it records a fixed message instead (see LEAVE_FAILED). */
    private static final int MAX_LEAVE_FAILURES = 8;
    private static final String LEAVE_FAILED = "the call failed and recording why failed too (out of memory?)";

    /** Ints per capsule in the batch buffer: buffer id, offset, length, result. */
    public static final int BATCH_STRIDE = 4;

    private final Object lock = new Object();
    private final Thread[] callerBox = new Thread[1];
    private long callerId;
    private volatile long active; // sequence number of the running outermost call, 0 when idle
    private long seq;
    private volatile long deadline;
    private volatile long allocLimit = Long.MAX_VALUE;
    private long allocStart;
    private int depth;
    private volatile int stopsIssued; // written under lock by the watchdog; never reset
    private int stopsSeen; // stops that arrived (or were found absorbed); equals stopsIssued between calls
    private volatile int stopBase; // stopsIssued when the current outermost call entered (the watchdog reads it)
    private long lastStopNs;
    private volatile int stopReason;
    private volatile boolean inHost; // the door: true while the thread is in a host call (no stop is issued)
    private volatile boolean stopWanted; // the watchdog found the call over budget while the door was closed
    private boolean[] hostAt = new boolean[8]; // the door of each nesting level, restored when a nested call leaves

    private PanCode[] codes = new PanCode[8];
    private PniBridge[] pnis = new PniBridge[8];
    private long[] timeNs = new long[8];
    private long[] memBytes = new long[8];
    private ByteBuffer[] buffers = new ByteBuffer[16];
    private int[] freeBuffers = new int[0];
    private IntBuffer batch;
    private int[] batchFaultKind = new int[0];
    private String[] batchFaultMessage = new String[0];

    private int faultKind;
    private String faultMessage;
    private String loadingEntry; // the entry class instantiate() is loading, for caught()

    // lanes the node's UDP fast path can reach from C by index (fastAccept)
    private static volatile Lane[] fastLanes = new Lane[0];
    private int fastIndex = -1;
    private ByteBuffer fastCtx;
    private int hostCalls; // calls into the Python host so far: a batch stops after a capsule that made one

    /** Where the fast path's batch area starts in the context buffer: a count, then per capsule
     * (offset in the buffer, length, verdict) as native-order ints (pan_jvm._fast). */
    public static final int FAST_BATCH_AT = 64;
    public static final int FAST_BATCH_STRIDE = 12;
    private static final int KIND_FORWARD = 2;

    public Lane() {
        Watchdog.register(this);
    }

    public void close() {
        Watchdog.unregister(this);
        synchronized (Lane.class) {
            if (fastIndex >= 0) {
                Lane[] lanes = fastLanes.clone();
                lanes[fastIndex] = null;
                fastLanes = lanes;
                fastIndex = -1;
            }
        }
    }

    /** Let the fast path run this lane's code; ctx is the direct buffer its context is copied to. */
    public int enableFast(ByteBuffer ctx) {
        fastCtx = ctx.order(ByteOrder.LITTLE_ENDIAN);
        synchronized (Lane.class) {
            if (fastIndex < 0) {
                Lane[] lanes = fastLanes;
                int i = 0;
                while (i < lanes.length && lanes[i] != null) i++;
                lanes = Arrays.copyOf(lanes, Math.max(lanes.length, i + 1));
                lanes[i] = this;
                fastLanes = lanes;
                fastIndex = i;
            }
            return fastIndex;
        }
    }

    /** accept() for the node's UDP fast path, called from C with the lane's index. */
    public static int fastAccept(int lane, int id, int bufId, int off, int len) {
        Lane l = fastLanes[lane];
        PniBridge pni = l.pnis[id];
        pni.fastCtx = l.fastCtx;
        pni.fastOn = true;
        try {
            return l.accept(id, bufId, off, len);
        } finally {
            pni.fastOn = false;
        }
    }

    /** fastAccept on the capsules of the batch area, in order, in one call from C: stops after
     * the first whose verdict is not a forward (a fault included) or that called the Python
     * host (the node took it over); returns how many ran. */
    public static int fastAcceptBatch(int lane, int id, int bufId) {
        Lane l = fastLanes[lane];
        PniBridge pni = l.pnis[id];
        ByteBuffer ctx = l.fastCtx;
        int n = ctx.getInt(FAST_BATCH_AT);
        pni.fastCtx = ctx;
        pni.fastOn = true;
        int i = 0;
        try {
            while (i < n) {
                int at = FAST_BATCH_AT + 8 + i * FAST_BATCH_STRIDE;
                ctx.putInt(FAST_BATCH_AT + 4, i); // the capsule running, for a host call's claim
                int calls = l.hostCalls;
                int r = l.accept(id, bufId, ctx.getInt(at), ctx.getInt(at + 4));
                ctx.putInt(at + 8, r);
                i++;
                if (r < 0 || (r & 0xff) != KIND_FORWARD || l.hostCalls != calls) break;
            }
        } finally {
            pni.fastOn = false;
        }
        return i;
    }

    // ---- registration (setup time, not per capsule) ----

    /** Remember a direct buffer over node memory; returns its id for accept(). */
    public int addBuffer(ByteBuffer b) {
        b.order(ByteOrder.BIG_ENDIAN);
        for (int i = 1; i < buffers.length; i++) {
            if (buffers[i] == null) {
                buffers[i] = b;
                return i;
            }
        }
        int id = buffers.length;
        buffers = Arrays.copyOf(buffers, id * 2);
        buffers[id] = b;
        return id;
    }

    public void removeBuffer(int id) {
        buffers[id] = null;
    }

    /** The shared batch array: a direct buffer of BATCH_STRIDE ints per capsule, native order. */
    public void setBatch(ByteBuffer b) {
        batch = b.order(ByteOrder.nativeOrder()).asIntBuffer();
        int n = batch.capacity() / BATCH_STRIDE;
        batchFaultKind = new int[n];
        batchFaultMessage = new String[n];
    }

    /** Instantiate entryClass from loader as code object number id (class initialisers run under budget). */
    public int instantiate(int id, CodeLoader loader, String entryClass, Upcalls up, long budgetNs, long budgetBytes) {
        grow(id);
        timeNs[id] = budgetNs;
        memBytes[id] = budgetBytes;
        PniBridge pni = new PniBridge(new HostGuard(this, up));
        pnis[id] = pni;
        int r;
        Throwable thrown = null;
        loadingEntry = entryClass;
        depth++; // before the try, so leave() always has one level to undo
        try {
            enter(id);
            Class<?> c = Class.forName(entryClass, true, loader);
            if (!PanCode.class.isAssignableFrom(c)) {
                r = fault(F_ENTRY, "entry class " + entryClass + " does not implement org.pan.pni.PanCode");
            } else {
                codes[id] = (PanCode) c.getDeclaredConstructor().newInstance();
                r = 0;
            }
        } catch (java.lang.reflect.InvocationTargetException e) {
            r = FAULT;
            thrown = e.getCause() == null ? e : e.getCause();
        } catch (Throwable t) {
            r = FAULT;
            thrown = t;
        }
        return leave(r, thrown);
    }

    public void setBudget(int id, long budgetNs, long budgetBytes) {
        timeNs[id] = budgetNs;
        memBytes[id] = budgetBytes;
    }

    public void drop(int id) {
        if (id < codes.length) {
            codes[id] = null;
            pnis[id] = null;
        }
    }

    private void grow(int id) {
        if (id >= codes.length) {
            int n = Math.max(id + 1, codes.length * 2);
            codes = Arrays.copyOf(codes, n);
            pnis = Arrays.copyOf(pnis, n);
            timeNs = Arrays.copyOf(timeNs, n);
            memBytes = Arrays.copyOf(memBytes, n);
        }
    }

    // ---- the per-capsule path ----

    /** Run accept of code id on len bytes at off of buffer bufId (0: not mapped, use the host). */
    public int accept(int id, int bufId, int off, int len) {
        PniBridge pni = pnis[id];
        pni.setBody(buffers[bufId], off, len);
        pni.index = 0;
        pni.selected = 0;
        int r;
        Throwable thrown = null;
        depth++; // before the try, so leave() always has one level to undo
        try {
            enter(id);
            r = codes[id].accept(pni, PniBridge.BODY, len);
            if (r == FAULT) r = fault(F_VERDICT, "accept returned Integer.MIN_VALUE, which is not a verdict");
        } catch (Throwable t) {
            r = FAULT;
            thrown = t;
        }
        return leave(r, thrown);
    }

    /** Run accept of code id on n capsules described in the batch buffer; results written back. */
    public int acceptBatch(int id, int n) {
        PniBridge pni = pnis[id];
        PanCode code = codes[id];
        IntBuffer b = batch;
        pni.selected = -1;
        int faults = 0;
        for (int i = 0; i < n; i++) {
            int at = i * BATCH_STRIDE;
            int len = b.get(at + 2);
            pni.setBody(buffers[b.get(at)], b.get(at + 1), len);
            pni.index = i;
            int r;
            Throwable thrown = null;
            depth++; // before the try, so leave() always has one level to undo
            try {
                enter(id);
                r = code.accept(pni, PniBridge.BODY, len);
                if (r == FAULT) r = fault(F_VERDICT, "accept returned Integer.MIN_VALUE, which is not a verdict");
            } catch (Throwable t) {
                r = FAULT;
                thrown = t;
            }
            r = leave(r, thrown);
            if (r == FAULT) {
                batchFaultKind[i] = faultKind;
                batchFaultMessage[i] = faultMessage;
                faults++;
            }
            b.put(at + 3, r);
        }
        pni.setBody(null, 0, 0);
        return faults;
    }

    public int init(int id) {
        PniBridge pni = pnis[id];
        pni.setBody(null, 0, 0);
        pni.index = 0;
        pni.selected = 0;
        int r;
        Throwable thrown = null;
        depth++; // before the try, so leave() always has one level to undo
        try {
            enter(id);
            r = codes[id].init(pni);
            if (r == FAULT) r = -1;
        } catch (Throwable t) {
            r = FAULT;
            thrown = t;
        }
        return leave(r, thrown);
    }

    public int finish(int id) {
        PniBridge pni = pnis[id];
        pni.setBody(null, 0, 0);
        pni.index = 0;
        pni.selected = 0;
        int r;
        Throwable thrown = null;
        depth++; // before the try, so leave() always has one level to undo
        try {
            enter(id);
            r = codes[id].finalize(pni);
            if (r == FAULT) r = -1;
        } catch (Throwable t) {
            r = FAULT;
            thrown = t;
        }
        return leave(r, thrown);
    }

    public long export(int id, String name, long a0, long a1) {
        PniBridge pni = pnis[id];
        long r;
        Throwable thrown = null;
        depth++; // before the try, so leave() always has one level to undo
        try {
            enter(id);
            r = codes[id].export(pni, name, a0, a1);
            if (r == FAULT_LONG) {
                fault(F_VERDICT, "export returned Long.MIN_VALUE");
            }
        } catch (Throwable t) {
            r = FAULT_LONG;
            thrown = t;
        }
        int k = leave(r == FAULT_LONG ? FAULT : 0, thrown);
        return k == FAULT ? FAULT_LONG : r;
    }

    // ---- faults ----

    public int faultKind() {
        return faultKind;
    }

    public String faultMessage() {
        return faultMessage;
    }

    public int batchFaultKind(int i) {
        return batchFaultKind[i];
    }

    public String batchFaultMessage(int i) {
        return batchFaultMessage[i];
    }

    private int fault(int kind, String message) {
        faultKind = kind;
        faultMessage = message;
        return FAULT;
    }

    @SuppressWarnings("deprecation")
    private int caught(Throwable t) {
        String entry = depth == 1 ? loadingEntry : null; // thrown by instantiate's own reflection
        if (entry != null && t instanceof ReflectiveOperationException) {
            if (t instanceof ClassNotFoundException) return fault(F_ENTRY, "entry class " + entry + " is not in the jar");
            if (t instanceof NoSuchMethodException) return fault(F_ENTRY, "entry class " + entry + " has no public no-argument constructor");
            if (t instanceof IllegalAccessException) return fault(F_ENTRY, "entry class " + entry + " or its constructor is not public");
        }
        if (t instanceof ThreadDeath) {
            if (stopsIssued == stopBase) {
                // no stop was issued for this call: one meant for an earlier call came late
                return fault(F_STALE, "interrupted by a watchdog stop issued for an earlier call");
            }
            stopsSeen++;
            int why = stopReason;
            return why == F_MEMORY
                ? fault(F_MEMORY, "stopped by the watchdog: allocated more than " + memBytes[current] + " bytes in one call")
                : fault(F_TIME, "stopped by the watchdog after " + (timeNs[current] / 1_000_000.0) + " ms");
        }
        if (t instanceof OutOfMemoryError) return fault(F_OOM, "OutOfMemoryError: " + t.getMessage());
        if (t instanceof StackOverflowError) return fault(F_STACK, "StackOverflowError: recursion too deep");
        if (t instanceof ExceptionInInitializerError) {
            Throwable c = t.getCause();
            return fault(F_INIT, "static initializer failed: " + (c == null ? t : c));
        }
        if (t instanceof LinkageError) {
            return fault(F_LINK, t.getClass().getName() + ": " + t.getMessage());
        }
        return fault(F_EXCEPTION, describe(t));
    }

    private static String describe(Throwable t) {
        StackTraceElement[] st = t.getStackTrace();
        String where = st.length > 0 ? " at " + st[0] : "";
        return t.getClass().getName() + (t.getMessage() == null ? "" : ": " + t.getMessage()) + where;
    }

    // ---- budget bookkeeping ----

    private int current;

    /** Start the budget of an outermost call (depth is already counted); nested calls share it. */
    private void enter(int id) {
        if (depth > 1) {
            openDoor();
            return;
        }
        Thread me = Thread.currentThread();
        if (callerBox[0] != me) {
            callerBox[0] = me;
            callerId = me.getId();
        }
        current = id;
        stopBase = stopsSeen = stopsIssued; // settled by the last leave() (or recover())
        long mem = memBytes[id];
        allocStart = Watchdog.THREADS.getCurrentThreadAllocatedBytes();
        allocLimit = mem > 0 ? allocStart + mem : Long.MAX_VALUE;
        long t = timeNs[id];
        deadline = System.nanoTime() + (t > 0 ? t : Long.MAX_VALUE / 4);
        active = ++seq;
        if (Watchdog.sleeping) Watchdog.wake(); // a volatile read while the watchdog is awake
    }

    /**
     * A call nested in a host call (a dependency's export): runs code the watchdog may stop,
     * so the door opens; leave() restores it. The door is closed until the write below, so no
     * stop can arrive before this level's door is recorded.
     */
    private void openDoor() {
        int d = depth;
        if (d >= hostAt.length) hostAt = Arrays.copyOf(hostAt, d * 2);
        hostAt[d] = inHost;
        synchronized (lock) {
            inHost = false;
        }
    }

    /**
     * Close the door before a host call: from here on no stop is issued until hostLeave. A stop
     * issued before the door closed may still be pending; it is collected here, in Java, and
     * thrown to the code (the door open again) instead of inside JPype.
     */
    void hostEnter() {
        hostCalls++;
        synchronized (lock) {
            inHost = true;
        }
        if (stopsIssued != stopsSeen) collectBeforeHost();
    }

    private void collectBeforeHost() {
        try {
            for (int i = 0; i < DRAIN_TRANSITIONS; i++) Thread.yield(); // a pending ThreadDeath is thrown on return
        } catch (Throwable t) {
            inHost = false; // the stop unwinds the code: the door is open again
            throw t;
        }
        stopsSeen = stopsIssued; // not pending: absorbed (leave() still counts the call as stopped)
    }

    /**
     * Open the door after a host call. A call that ran past its deadline in the host, or that
     * the watchdog wanted stopped while the door was closed, is stopped here: the ThreadDeath
     * is thrown synchronously, counted like one the watchdog issued.
     */
    @SuppressWarnings("deprecation")
    void hostLeave() {
        boolean stop;
        synchronized (lock) {
            inHost = false;
            stop = active != 0 && (stopWanted || System.nanoTime() - deadline > 0);
            if (stop) {
                if (!stopWanted) stopReason = F_TIME;
                stopWanted = false;
                stopsIssued++;
                lastStopNs = System.nanoTime();
            }
        }
        if (stop) throw new ThreadDeath();
    }

    /**
     * Leave a call: classify what the call threw, and collect every stop already issued before
     * control goes back to the host. At the outermost level the watchdog stops issuing stops
     * (no call active); a nested call (from a host call) closes the door again. A stop that
     * does not arrive within DRAIN_TRANSITIONS VM transitions was absorbed (by JDK code: the
     * checker refuses code that can absorb one); an outermost call that was stopped and still
     * returned normally counts as stopped. Runs in a loop so a stop arriving here, at any
     * step, is caught and classified like one arriving in the code.
     */
    private int leave(int r, Throwable thrown) {
        int level = 0; // the nesting level this call ran at, once counted out
        int transitions = 0;
        int failures = 0;
        for (;;) {
            try {
                if (thrown != null) {
                    Throwable t = thrown;
                    thrown = null;
                    r = caught(t);
                }
                if (level == 0) {
                    level = depth--;
                    if (level == 1) loadingEntry = null;
                }
                boolean toHost = level > 1 && hostAt[level];
                int issued;
                synchronized (lock) { // volatile writes only where something changes: this is the hot path
                    if (level == 1) {
                        active = 0;
                        if (inHost) inHost = false;
                        if (stopWanted) stopWanted = false;
                    } else if (inHost != toHost) {
                        inHost = toHost;
                    }
                    issued = stopsIssued;
                }
                if (issued != stopsSeen && (level == 1 || toHost)) {
                    if (transitions++ < DRAIN_TRANSITIONS) {
                        Thread.yield(); // a native call: a pending ThreadDeath is thrown on its return
                        continue;
                    }
                    stopsSeen = issued; // absorbed
                }
                if (level > 1) return r;
                if (issued != stopBase) {
                    Thread.interrupted(); // Thread.stop also sets the interrupt flag
                    if (r != FAULT) r = fault(stopReason == F_MEMORY ? F_MEMORY : F_TIME, "stopped by the watchdog (code absorbed the stop)");
                }
                if (r != FAULT && allocLimit != Long.MAX_VALUE
                        && Watchdog.THREADS.getCurrentThreadAllocatedBytes() > allocLimit) {
                    r = fault(F_MEMORY, "allocated " + (Watchdog.THREADS.getCurrentThreadAllocatedBytes() - allocStart)
                        + " bytes in one call, more than the budget of " + memBytes[current]);
                }
                return r;
            } catch (Throwable t) {
                thrown = t;
                if (++failures > MAX_LEAVE_FAILURES) { // classifying keeps failing (no heap left?)
                    thrown = null;
                    r = fault(t instanceof OutOfMemoryError ? F_OOM : F_EXCEPTION, LEAVE_FAILED);
                }
            }
        }
    }

    /** recover(): no call was active, so the exception was thrown before a call entered (the code did not run). */
    public static final int RECOVERED_IDLE = 0;
    /** recover(): a call was active and no stop had been issued for it. */
    public static final int RECOVERED_UNSTOPPED = 1;
    /** recover(): a call was active and the watchdog had stopped it. */
    public static final int RECOVERED_STOPPED = 2;
    /** recover(): called from inside a lane call (a host call nested in it), which is left alone. */
    public static final int RECOVERED_NESTED = -1;

    /**
     * Put the lane back to idle after an exception escaped a call into the host (which the
     * design above rules out but for a stop from outside the lane; this is the host's last
     * resort): no call active, the door open, every issued stop collected or written off,
     * interrupt flag cleared. Returns one of the RECOVERED_* values.
     */
    @SuppressWarnings("deprecation")
    public int recover() {
        if (insideCall()) return RECOVERED_NESTED;
        for (int transitions = 0;;) {
            try {
                int issued;
                synchronized (lock) {
                    active = 0;
                    inHost = false;
                    stopWanted = false;
                    issued = stopsIssued;
                }
                if (issued != stopsSeen && transitions++ < DRAIN_TRANSITIONS) {
                    Thread.yield();
                    continue;
                }
                int status = depth == 0 ? RECOVERED_IDLE : issued != stopBase ? RECOVERED_STOPPED : RECOVERED_UNSTOPPED;
                depth = 0;
                stopsSeen = stopBase = issued;
                loadingEntry = null;
                Thread.interrupted();
                return status;
            } catch (ThreadDeath td) {
                stopsSeen++;
            }
        }
    }

    /** Whether a lane call is on this thread's stack below recover() (a host call nested in it). */
    private static boolean insideCall() {
        return StackWalker.getInstance().walk(frames -> frames.anyMatch(
            f -> f.getClassName().equals(Lane.class.getName()) && !f.getMethodName().equals("recover")
                && !f.getMethodName().equals("insideCall") && !f.getMethodName().startsWith("lambda$")));
    }

    /** Whether a call is running on this lane (the watchdog parks while none is). */
    boolean busy() {
        return active != 0;
    }

    /** Called by the watchdog thread every tick; returns whether a call is running. */
    @SuppressWarnings("deprecation")
    boolean watch(long now) {
        long s = active;
        if (s == 0) return false;
        int reason;
        if (now - deadline > 0) {
            reason = F_TIME;
        } else if (allocLimit != Long.MAX_VALUE && Watchdog.THREADS.getThreadAllocatedBytes(callerId) > allocLimit) {
            reason = F_MEMORY;
        } else {
            return true;
        }
        synchronized (lock) {
            if (active != s) return true;
            if (stopsIssued != stopBase && now - lastStopNs < Watchdog.RESTOP_NS) return true; // already stopped this call
            stopReason = reason;
            if (inHost) { // the door is closed: hostLeave stops the call when it is back in Java
                stopWanted = true;
                return true;
            }
            Thread caller = callerBox[0];
            if (waitOutHostInit(s, now, caller)) return true;
            stopsIssued++;
            lastStopNs = now;
            caller.stop();
        }
        return true;
    }

    private long initWaitSeq; // the call the watchdog first found in a host class's initializer
    private long initWaitFrom; // and when (the watchdog thread alone reads and writes these)

    /**
     * Hold a stop back while the caller runs a host class's static initializer, for at most
     * HOST_INIT_WAIT_NS per call: the watchdog tries again next tick.
     */
    private boolean waitOutHostInit(long seq, long now, Thread caller) {
        if (!Watchdog.inHostClassInit(caller.getStackTrace())) return false;
        if (initWaitSeq != seq) {
            initWaitSeq = seq;
            initWaitFrom = now;
        }
        if (now - initWaitFrom >= Watchdog.HOST_INIT_WAIT_NS) return false;
        Watchdog.countInitDeferral();
        return true;
    }

    // ---- statistics ----

    /** Garbage collections the JVM has run so far (all collectors). */
    public static long gcCount() {
        long n = 0;
        for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
            long c = gc.getCollectionCount();
            if (c > 0) n += c;
        }
        return n;
    }

    /** Milliseconds the JVM has spent in garbage collection so far. */
    public static long gcMillis() {
        long n = 0;
        for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
            long c = gc.getCollectionTime();
            if (c > 0) n += c;
        }
        return n;
    }
}
