// badargs: see capsule.c
import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.PniStatus;
import org.pan.pni.Verdict;

public final class Capsule implements PanCode {
    private final byte[] buf = new byte[4];
    private final byte[] nowhere = new byte[16];
    private static final byte[] MISSING = {'m', 'i', 's', 's', 'i', 'n', 'g'};

    @Override
    public int accept(PNI pni, int capsule, int length) {
        for (int i = 0; i < 16; i++) nowhere[i] = (byte) 0xEE;
        boolean ok = pni.segLength(99) == PniStatus.BAD_HANDLE;
        ok &= pni.segRead(capsule, length, buf, 0, 4) == PniStatus.OUT_OF_RANGE;
        ok &= pni.segSetU8(capsule, 0, 300) == PniStatus.BAD_ARGUMENT;
        ok &= pni.stateGet(MISSING, 0, 7, buf, 0, 4) == PniStatus.NOT_FOUND;
        ok &= pni.sendToward(nowhere, capsule) == PniStatus.NO_ROUTE;
        ok &= pni.segLength(capsule) == length;
        return ok ? Verdict.DONE : Verdict.DROP;
    }
}
