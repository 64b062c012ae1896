// initspin: init never returns on its own; only the node's budget ends it.
import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.Verdict;

public final class InitSpin implements PanCode {
    private int n;

    @Override
    public int init(PNI pni) {
        for (;;) {
            n = n * 1664525 + 1013904223;
        }
    }

    @Override
    public int accept(PNI pni, int capsule, int length) {
        return Verdict.DONE;
    }
}
