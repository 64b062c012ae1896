package cases;

import java.util.ArrayList;
import java.util.List;
import org.pan.pni.PNI;
import org.pan.pni.PanCode;

public final class Bomb implements PanCode {
    private static final List<long[]> HOARD = new ArrayList<>();

    @Override
    public int accept(PNI pni, int capsule, int length) {
        if (length == 1) {
            long[] huge = new long[Integer.MAX_VALUE - 16];
            return huge.length;
        }
        for (;;) HOARD.add(new long[1 << 16]);
    }
}
