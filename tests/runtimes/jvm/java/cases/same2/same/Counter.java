package same;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

public final class Counter implements PanCode {
    static int count = 200;

    @Override
    public int accept(PNI pni, int capsule, int length) {
        return count++;
    }
}
