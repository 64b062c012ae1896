package cases;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

/**
 * Runs for 0 to length/4 ms (the clock's low bits decide) calling into the host all the
 * while, so that against a budget of length/8 ms the watchdog's stop lands anywhere: in the
 * code, inside a host call (in Python), on the way out.
 */
public final class Jitter implements PanCode {
    public static volatile long sink;
    private final byte[] scratch = new byte[8];

    @Override
    public int accept(PNI pni, int capsule, int length) {
        long start = System.nanoTime();
        long wait = start % (length * 250_000L); // 16 bytes: up to 4 ms
        byte[] key = {'j'};
        while (System.nanoTime() - start < wait) {
            sink += pni.stateGet(key, 0, 1, scratch, 0, 8);
        }
        return 0;
    }

    @Override
    public long export(PNI pni, String name, long a0, long a1) {
        return accept(pni, 1, (int) a0);
    }
}
