// faulty: from an application, forward toward the address at body offset 1; from the
// network, body[0] == 1 throws (a fault of the code) and anything else is DONE. The `twice`
// export answers 2 * a0 + a1.
// Exports: twice
import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.PniStatus;
import org.pan.pni.Verdict;

public final class Capsule implements PanCode {
    @Override
    public int accept(PNI pni, int capsule, int length) {
        if (pni.envOriginKind() == 1) {
            return Verdict.forward(1);
        }
        if (length > 0 && pni.segGetU8(capsule, 0) == 1) {
            throw new IllegalStateException("faulty refuses this capsule");
        }
        return Verdict.DONE;
    }

    @Override
    public long export(PNI pni, String name, long a0, long a1) {
        return "twice".equals(name) ? 2 * a0 + a1 : PniStatus.NOT_FOUND;
    }
}
