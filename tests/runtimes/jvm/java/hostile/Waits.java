package hostile;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

public final class Waits implements PanCode {
    @Override
    public int accept(PNI pni, int capsule, int length) {
        try {
            synchronized (this) {
                wait();
            }
        } catch (InterruptedException e) {
            return -1;
        }
        return 0;
    }
}
