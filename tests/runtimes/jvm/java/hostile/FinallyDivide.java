package hostile;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

/** A finally whose integer division throws ArithmeticException in the stop's place. */
public final class FinallyDivide implements PanCode {
    @Override
    public int accept(PNI pni, int capsule, int length) {
        int zero = length - length;
        for (;;) {
            try {
                try {
                    while (length >= 0) length++;
                } finally {
                    length = 1 / zero;
                }
            } catch (ArithmeticException e) {
                length = 0;
            }
        }
    }
}
