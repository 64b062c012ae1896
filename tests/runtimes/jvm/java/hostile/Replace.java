package hostile;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

/** Turns the stop into an exception of its own, which the caller catches and carries on. */
public final class Replace implements PanCode {
    @Override
    public int accept(PNI pni, int capsule, int length) {
        for (;;) {
            try {
                spin(length);
            } catch (IllegalStateException e) {
                length = 0;
            }
        }
    }

    private static void spin(int length) {
        try {
            while (length >= 0) length++;
        } catch (Throwable t) {
            throw new IllegalStateException("not a stop any more");
        }
    }
}
