package cases;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

public final class BadClinit implements PanCode {
    static final int VALUE = Integer.parseInt("not a number");

    @Override
    public int accept(PNI pni, int capsule, int length) {
        return VALUE;
    }
}
