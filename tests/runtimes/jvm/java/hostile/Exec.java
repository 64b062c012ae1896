package hostile;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

public final class Exec implements PanCode {
    @Override
    public int accept(PNI pni, int capsule, int length) {
        try {
            Runtime.getRuntime().exec("touch /tmp/pan-jvm-pwned");
        } catch (Exception e) {
            return -1;
        }
        return 0;
    }
}
