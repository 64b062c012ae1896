// hopmark: forward; a marked capsule writes its own hop limit to body byte 21 (see capsule.c)
import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.Verdict;

public final class Capsule implements PanCode {
    private static final int VERDICT = Verdict.forward(0);

    @Override
    public int accept(PNI pni, int capsule, int length) {
        if (length >= 22 && pni.segGetU8(capsule, 20) != 0) pni.segSetU8(capsule, 21, pni.capsuleHopLimit());
        return VERDICT;
    }
}
