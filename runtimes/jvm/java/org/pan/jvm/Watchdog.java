package org.pan.jvm;

import java.lang.management.ManagementFactory;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.locks.LockSupport;

/**
 * One daemon thread per JVM that stops calls running past their deadline or allocating past
 * their memory budget. The calling thread never waits for it: it only looks at lanes every
 * tick, and acts (Thread.stop, still available on JDK 17) when a call is over budget.
 */
public final class Watchdog implements Runnable {
    static final com.sun.management.ThreadMXBean THREADS =
        (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
    /** Re-issue a stop that code absorbed (e.g. in a finally that loops) after this long. */
    static final long RESTOP_NS = 50_000_000L;

    private static final CopyOnWriteArrayList<Lane> LANES = new CopyOnWriteArrayList<>();
    private static volatile long tickNs = 2_000_000L;
    private static Thread thread;

    private Watchdog() {}

    static synchronized void register(Lane lane) {
        LANES.add(lane);
        if (thread == null) {
            thread = new Thread(new Watchdog(), "pan-jvm-watchdog");
            thread.setDaemon(true);
            thread.setPriority(Thread.MAX_PRIORITY);
            thread.start();
        }
    }

    static void unregister(Lane lane) {
        LANES.remove(lane);
    }

    public static void setTickMillis(double ms) {
        tickNs = Math.max(100_000L, (long) (ms * 1e6));
    }

    public static long tickNanos() {
        return tickNs;
    }

    @Override
    public void run() {
        for (;;) {
            LockSupport.parkNanos(tickNs);
            long now = System.nanoTime();
            for (Lane lane : LANES) {
                lane.watch(now);
            }
        }
    }
}
