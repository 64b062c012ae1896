// initloop: once a capsule armed it (body[0] == 1 puts "armed" in soft state, which the node
// keeps across the code's workers), init never returns: a restarted worker's init runs away.
import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.Verdict;

public final class InitLoop implements PanCode {
    private static final byte[] ARMED = {'a', 'r', 'm', 'e', 'd'};
    private int n;

    @Override
    public int init(PNI pni) {
        byte[] v = new byte[1];
        if (pni.stateGet(ARMED, 0, ARMED.length, v, 0, 1) != 1) {
            return 0;
        }
        for (;;) {
            n = n * 1664525 + 1013904223;
        }
    }

    @Override
    public int accept(PNI pni, int capsule, int length) {
        if (length > 0 && pni.segGetU8(capsule, 0) == 1) {
            pni.statePut(ARMED, 0, ARMED.length, new byte[] {1}, 0, 1, 0);
        }
        return Verdict.DONE;
    }
}
