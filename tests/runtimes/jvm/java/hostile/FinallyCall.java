package hostile;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

/** A finally that calls a method: whatever the method throws takes the stop's place. */
public final class FinallyCall implements PanCode {
    private int calls;

    @Override
    public int accept(PNI pni, int capsule, int length) {
        try {
            while (length >= 0) length++;
        } finally {
            tidy();
        }
        return 0;
    }

    private void tidy() {
        calls++;
    }
}
