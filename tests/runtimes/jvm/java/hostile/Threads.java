package hostile;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

public final class Threads implements PanCode {
    @Override
    public int accept(PNI pni, int capsule, int length) {
        new Thread(() -> { for (;;) { } }).start();
        return 0;
    }
}
