// hoard: body = seq u32, copies u8; see capsule.c
import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.Verdict;

public final class Capsule implements PanCode {
    private final byte[] key = new byte[5];
    private final byte[] me = new byte[16];

    @Override
    public int accept(PNI pni, int capsule, int length) {
        if (length < 5 || pni.segRead(capsule, 0, key, 1, 4) != 4) return Verdict.DROP;
        key[0] = 'h';
        int st = pni.statePutSeg(key, 0, 5, capsule, 0);
        if (st < 0) return st;
        long copies = pni.segGetU8(capsule, 4);
        if (copies <= 0) return Verdict.DONE;
        if (pni.segSetU8(capsule, 4, 0) < 0 || pni.nodeAddress(me) < 0) return Verdict.DROP;
        for (long i = 0; i < copies; i++) {
            st = pni.sendToward(me, capsule);
            if (st < 0) return st;
        }
        return Verdict.DONE;
    }
}
