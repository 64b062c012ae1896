package cases;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.Verdict;

/** Correct code: delivers every capsule to port 7 (the node asks its portmapper's lookup). */
public final class Deliver implements PanCode {
    @Override
    public int accept(PNI pni, int capsule, int length) {
        return Verdict.deliver(7);
    }
}
