package hostile;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

public final class CatchAll implements PanCode {
    @Override
    public int accept(PNI pni, int capsule, int length) {
        for (;;) {
            try {
                while (length >= 0) length++;
            } catch (Throwable t) {
                length = 0;
            }
        }
    }
}
