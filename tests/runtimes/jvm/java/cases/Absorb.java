package cases;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

/** Swallows the watchdog's stop in a finally that returns; the call still counts as stopped. */
public final class Absorb implements PanCode {
    public static volatile long sink;

    @Override
    @SuppressWarnings("finally")
    public int accept(PNI pni, int capsule, int length) {
        try {
            while (length >= 0) sink++;
        } finally {
            return 7;
        }
    }
}
