package cases;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

/**
 * A constructor that busy-waits for 0 to 4 ms (taken from the clock's low bits), so that
 * against a 2 ms load budget some loads finish just before the watchdog's stop and some
 * just after: the window where a stop is issued while the call is on its way out.
 */
public final class NearDeadline implements PanCode {
    public static volatile long sink;

    public NearDeadline() {
        long start = System.nanoTime();
        long wait = start % 4_000_000L;
        while (System.nanoTime() - start < wait) sink++;
    }

    @Override
    public int accept(PNI pni, int capsule, int length) {
        return 0;
    }
}
