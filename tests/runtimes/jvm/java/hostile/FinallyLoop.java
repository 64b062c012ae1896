package hostile;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

/** A finally that jumps back into its own try: every stop is swallowed, the call never ends. */
public final class FinallyLoop implements PanCode {
    @Override
    @SuppressWarnings("finally")
    public int accept(PNI pni, int capsule, int length) {
        for (;;) {
            try {
                while (length >= 0) length++;
            } finally {
                continue;
            }
        }
    }
}
