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
    private int stopsIssued; // guarded by lock
    private int stopsSeen;
    private long lastStopNs;
    private volatile int stopReason;

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

    // lanes the node's UDP fast path can reach from C by index (fastAccept)
    private static volatile Lane[] fastLanes = new Lane[0];
    private int fastIndex = -1;
    private ByteBuffer fastCtx;

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
        PniBridge pni = new PniBridge(up);
        pnis[id] = pni;
        int r;
        enter(id);
        try {
            Class<?> c = Class.forName(entryClass, true, loader);
            if (!PanCode.class.isAssignableFrom(c)) {
                r = fault(F_ENTRY, "entry class " + entryClass + " does not implement org.pan.pni.PanCode");
            } else {
                codes[id] = (PanCode) c.getDeclaredConstructor().newInstance();
                r = 0;
            }
        } catch (ClassNotFoundException e) {
            r = fault(F_ENTRY, "entry class " + entryClass + " is not in the jar");
        } catch (NoSuchMethodException e) {
            r = fault(F_ENTRY, "entry class " + entryClass + " has no public no-argument constructor");
        } catch (IllegalAccessException e) {
            r = fault(F_ENTRY, "entry class " + entryClass + " or its constructor is not public");
        } catch (java.lang.reflect.InvocationTargetException e) {
            r = caught(e.getCause() == null ? e : e.getCause(), true);
        } catch (ExceptionInInitializerError e) {
            r = caught(e, true);
        } catch (Throwable t) {
            r = caught(t, true);
        }
        return leave(r);
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
        enter(id);
        int r;
        try {
            r = codes[id].accept(pni, PniBridge.BODY, len);
            if (r == FAULT) r = fault(F_VERDICT, "accept returned Integer.MIN_VALUE, which is not a verdict");
        } catch (Throwable t) {
            r = caught(t, false);
        }
        return leave(r);
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
            enter(id);
            int r;
            try {
                r = code.accept(pni, PniBridge.BODY, len);
                if (r == FAULT) r = fault(F_VERDICT, "accept returned Integer.MIN_VALUE, which is not a verdict");
            } catch (Throwable t) {
                r = caught(t, false);
            }
            r = leave(r);
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
        enter(id);
        int r;
        try {
            r = codes[id].init(pni);
            if (r == FAULT) r = -1;
        } catch (Throwable t) {
            r = caught(t, false);
        }
        return leave(r);
    }

    public int finish(int id) {
        PniBridge pni = pnis[id];
        pni.setBody(null, 0, 0);
        pni.index = 0;
        pni.selected = 0;
        enter(id);
        int r;
        try {
            r = codes[id].finalize(pni);
            if (r == FAULT) r = -1;
        } catch (Throwable t) {
            r = caught(t, false);
        }
        return leave(r);
    }

    public long export(int id, String name, long a0, long a1) {
        PniBridge pni = pnis[id];
        enter(id);
        long r;
        try {
            r = codes[id].export(pni, name, a0, a1);
            if (r == FAULT_LONG) {
                fault(F_VERDICT, "export returned Long.MIN_VALUE");
            }
        } catch (Throwable t) {
            caught(t, false);
            r = FAULT_LONG;
        }
        int k = leave(r == FAULT_LONG ? FAULT : 0);
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
    private int caught(Throwable t, boolean loading) {
        if (t instanceof ThreadDeath) {
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

    private void enter(int id) {
        if (depth++ > 0) return;
        Thread me = Thread.currentThread();
        if (callerBox[0] != me) {
            callerBox[0] = me;
            callerId = me.getId();
        }
        current = id;
        stopsIssued = 0;
        stopsSeen = 0;
        long mem = memBytes[id];
        allocStart = Watchdog.THREADS.getCurrentThreadAllocatedBytes();
        allocLimit = mem > 0 ? allocStart + mem : Long.MAX_VALUE;
        long t = timeNs[id];
        deadline = System.nanoTime() + (t > 0 ? t : Long.MAX_VALUE / 4);
        active = ++seq;
    }

    /** Leave a call; at the outermost level also wait out a stop that is still in flight. */
    @SuppressWarnings("deprecation")
    private int leave(int r) {
        if (--depth > 0) return r;
        for (;;) {
            try {
                boolean inFlight;
                synchronized (lock) {
                    active = 0;
                    inFlight = stopsIssued != stopsSeen;
                }
                if (inFlight) {
                    // a stop was issued; it arrives at the next safepoint poll, so spin briefly for it
                    long until = System.nanoTime() + 20_000_000L;
                    while (System.nanoTime() - until < 0) Thread.onSpinWait();
                    stopsSeen = stopsIssued; // code absorbed it (a finally that did not rethrow)
                    if (r != FAULT) r = fault(stopReason == F_MEMORY ? F_MEMORY : F_TIME, "stopped by the watchdog (code absorbed the stop)");
                }
                break;
            } catch (ThreadDeath td) {
                stopsSeen++;
                r = caught(td, false);
            }
        }
        if (r != FAULT && allocLimit != Long.MAX_VALUE
                && Watchdog.THREADS.getCurrentThreadAllocatedBytes() > allocLimit) {
            r = fault(F_MEMORY, "allocated " + (Watchdog.THREADS.getCurrentThreadAllocatedBytes() - allocStart)
                + " bytes in one call, more than the budget of " + memBytes[current]);
        }
        return r;
    }

    /** Called by the watchdog thread every tick. */
    @SuppressWarnings("deprecation")
    void watch(long now) {
        long s = active;
        if (s == 0) return;
        int reason;
        if (now - deadline > 0) {
            reason = F_TIME;
        } else if (allocLimit != Long.MAX_VALUE && Watchdog.THREADS.getThreadAllocatedBytes(callerId) > allocLimit) {
            reason = F_MEMORY;
        } else {
            return;
        }
        synchronized (lock) {
            if (active != s) return;
            if (stopsIssued > 0 && now - lastStopNs < Watchdog.RESTOP_NS) return;
            stopReason = reason;
            stopsIssued++;
            lastStopNs = now;
            callerBox[0].stop();
        }
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
