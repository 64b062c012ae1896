package org.pan.jvm;

import java.lang.management.ManagementFactory;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.locks.LockSupport;

/**
 * One daemon thread per JVM that stops calls running past their deadline or allocating past
 * their memory budget. The calling thread never waits for it: it only looks at lanes every
 * tick, and acts (Thread.stop, still available on JDK 17) when a call is over budget.
 *
 * <p>An idle node costs no CPU here: after IDLE_TICKS ticks without a running call the
 * thread parks until a call enters. Entry reads one volatile flag (sleeping) and unparks
 * only when it is set; the thread sets the flag before it looks at the lanes one last time,
 * and entry marks its call active before it reads the flag, so one of the two always sees
 * the other and no call runs unwatched.
 */
public final class Watchdog implements Runnable {
    static final com.sun.management.ThreadMXBean THREADS =
        (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
    /** Re-issue a stop that code absorbed (e.g. in a finally that loops) after this long. */
    static final long RESTOP_NS = 50_000_000L;
    /** Ticks without a running call before the thread parks. */
    static final int IDLE_TICKS = 8;
    /**
     * How long a stop waits while the call is inside the static initializer of a class that is
     * not the code's own (a JDK class, reached through an allowed API): a stop there leaves that
     * class unusable for the JVM's life ("Could not initialize class ..."), for every code
     * object. Past this the stop is issued anyway, so no initializer shelters a call for long.
     */
    static final long HOST_INIT_WAIT_NS = 20_000_000L;

    private static final CopyOnWriteArrayList<Lane> LANES = new CopyOnWriteArrayList<>();
    private static volatile long tickNs = 2_000_000L;
    private static volatile Thread thread;
    /** The thread is parked (or about to park) until a call enters. */
    static volatile boolean sleeping;
    private static volatile long parks;
    private static volatile long initDeferrals;

    private Watchdog() {}

    static synchronized void register(Lane lane) {
        LANES.add(lane);
        if (thread == null) {
            Thread t = new Thread(new Watchdog(), "pan-jvm-watchdog");
            t.setDaemon(true);
            t.setPriority(Thread.MAX_PRIORITY);
            thread = t;
            t.start();
        }
    }

    static void unregister(Lane lane) {
        LANES.remove(lane);
    }

    /** A call entered while the thread was parked: let it watch again. */
    static void wake() {
        sleeping = false;
        Thread t = thread;
        if (t != null) LockSupport.unpark(t);
    }

    public static void setTickMillis(double ms) {
        tickNs = Math.max(100_000L, (long) (ms * 1e6));
    }

    public static long tickNanos() {
        return tickNs;
    }

    /** How many times the thread has parked for want of a running call (for tests and stats). */
    public static long parks() {
        return parks;
    }

    /** Whether the thread is parked now. */
    public static boolean parked() {
        return sleeping;
    }

    /** Stops held back because the call was inside a host class's static initializer. */
    public static long initDeferrals() {
        return initDeferrals;
    }

    static void countInitDeferral() {
        initDeferrals++; // only the watchdog thread writes it
    }

    /**
     * Whether a stack shows a static initializer running for a class that is not code's own:
     * one whose loader is not a code loader (the boot, platform or application loader).
     */
    public static boolean inHostClassInit(StackTraceElement[] stack) {
        for (StackTraceElement e : stack) {
            if (!"<clinit>".equals(e.getMethodName())) continue;
            String loader = e.getClassLoaderName();
            if (loader == null || !loader.startsWith(CodeLoader.NAME_PREFIX)) return true;
        }
        return false;
    }

    /**
     * Initialize the named classes now, at start-up, so that no call is stopped inside their
     * static initializers later (the allowed JDK classes and the helpers they use lazily).
     * Names this JDK does not have are passed over. Returns how many were initialized.
     */
    public static int preinitialize(String[] names) {
        int n = 0;
        for (String name : names) {
            try {
                Class.forName(name, true, null);
                n++;
            } catch (ClassNotFoundException | LinkageError e) {
                // not in this JDK, or it cannot initialize here: code cannot reach it either
            }
        }
        return n;
    }

    private static boolean anyBusy() {
        for (Lane lane : LANES) {
            if (lane.busy()) return true;
        }
        return false;
    }

    @Override
    public void run() {
        int idle = 0;
        for (;;) {
            LockSupport.parkNanos(tickNs);
            long now = System.nanoTime();
            boolean busy = false;
            for (Lane lane : LANES) {
                busy |= lane.watch(now);
            }
            if (busy || ++idle < IDLE_TICKS) {
                if (busy) idle = 0;
                continue;
            }
            sleeping = true;
            if (!anyBusy()) {
                parks++;
                while (sleeping) LockSupport.park(this); // until wake(); spurious returns look again
            }
            sleeping = false;
            idle = 0;
        }
    }
}
