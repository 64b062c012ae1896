// forward: carry the capsule on toward the `dest` at body offset 0 (docs/protocols.md).

import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.Verdict;

public final class Forward implements PanCode {
    private static final int VERDICT = Verdict.forward(0);

    @Override
    public int accept(PNI pni, int capsule, int length) {
        return VERDICT;
    }
}
