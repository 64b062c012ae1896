package hostile;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

public final class Exit implements PanCode {
    @Override
    public int accept(PNI pni, int capsule, int length) {
        System.exit(3);
        return 0;
    }
}
