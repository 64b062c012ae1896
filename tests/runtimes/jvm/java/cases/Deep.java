package cases;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

public final class Deep implements PanCode {
    private int down(int n) {
        return n == Integer.MIN_VALUE ? 0 : down(n + 1) + 1;
    }

    @Override
    public int accept(PNI pni, int capsule, int length) {
        return down(length);
    }
}
