// initloop: once a capsule armed it (body[0] == 1 puts "armed" in soft state, which the node
// keeps across the code's workers), init runs away: a restarted worker's init spins, looking at
// its soft state every few million rounds, and returns only once "armed" is gone.
import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.Verdict;

public final class InitLoop implements PanCode {
    private static final byte[] ARMED = {'a', 'r', 'm', 'e', 'd'};
    private volatile int n;

    @Override
    public int init(PNI pni) {
        byte[] v = new byte[1];
        while (pni.stateGet(ARMED, 0, ARMED.length, v, 0, 1) == 1) {
            for (int i = 0; i < (1 << 22); i++) {
                n = n * 1664525 + 1013904223;
            }
        }
        return 0;
    }

    @Override
    public int accept(PNI pni, int capsule, int length) {
        if (length > 0 && pni.segGetU8(capsule, 0) == 1) {
            pni.statePut(ARMED, 0, ARMED.length, new byte[] {1}, 0, 1, 0);
        }
        return Verdict.DONE;
    }
}
