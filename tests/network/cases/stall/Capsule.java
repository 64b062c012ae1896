// stall: runs for 100 ms by the node's clock, past the budget the tests give (see capsule.c)
import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.Verdict;

public final class Capsule implements PanCode {
    @Override
    public int accept(PNI pni, int capsule, int length) {
        long end = pni.nodeNowNs() + 100_000_000L;
        while (pni.nodeNowNs() < end) {
        }
        return Verdict.DROP;
    }
}
