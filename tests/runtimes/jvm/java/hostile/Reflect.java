package hostile;

import java.lang.reflect.Field;
import org.pan.pni.PNI;
import org.pan.pni.PanCode;

public final class Reflect implements PanCode {
    @Override
    public int accept(PNI pni, int capsule, int length) {
        try {
            Field f = pni.getClass().getDeclaredField("up");
            f.setAccessible(true);
            return f.get(pni) == null ? 0 : 1;
        } catch (Exception e) {
            return -1;
        }
    }
}
