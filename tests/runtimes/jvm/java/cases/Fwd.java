package cases;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.Verdict;

public final class Fwd implements PanCode {
    @Override
    public int accept(PNI pni, int capsule, int length) {
        return Verdict.forward(0);
    }
}
