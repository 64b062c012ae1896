// softstate: body = op u8, pad[3], key u32; see capsule.c
import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.PniStatus;
import org.pan.pni.Verdict;

public final class Capsule implements PanCode {
    private final byte[] b = new byte[8];
    private final byte[] key = new byte[5];
    private final byte[] value = {1, 2, 3, 4};

    @Override
    public int accept(PNI pni, int capsule, int length) {
        if (length < 8 || pni.segRead(capsule, 0, b, 0, 8) != 8) return Verdict.DROP;
        key[0] = 'k';
        System.arraycopy(b, 4, key, 1, 4);
        switch (b[0]) {
            case 0: return pni.statePut(key, 0, 5, value, 0, 4, 0) == PniStatus.OK ? Verdict.DONE : Verdict.DROP;
            case 2: return pni.statePut(key, 0, 5, value, 0, 4, 1000) == PniStatus.OK ? Verdict.DONE : Verdict.DROP;
            case 1: return pni.stateGet(key, 0, 5, value, 0, 4) >= 0 ? Verdict.DONE : Verdict.DROP;
            default: return Verdict.DROP;
        }
    }
}
