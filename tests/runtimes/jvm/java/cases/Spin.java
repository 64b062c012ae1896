package cases;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

public final class Spin implements PanCode {
    public static volatile long sink;

    @Override
    public int accept(PNI pni, int capsule, int length) {
        long x = 0;
        while (length >= 0) {
            x++;
            sink = x;
        }
        return 0;
    }
}
