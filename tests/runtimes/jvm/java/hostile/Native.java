package hostile;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

public final class Native implements PanCode {
    private static native int poke(long address);

    @Override
    public int accept(PNI pni, int capsule, int length) {
        return poke(0);
    }
}
