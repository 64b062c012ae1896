// dep user: see capsule.c
import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.PniStatus;
import org.pan.pni.Verdict;

public final class Capsule implements PanCode {
    private static final byte[] TRIPLE = {'t', 'r', 'i', 'p', 'l', 'e'};
    private static final byte[] HIDDEN = {'h', 'i', 'd', 'd', 'e', 'n'};

    @Override
    public int accept(PNI pni, int capsule, int length) {
        long t = pni.depCall(0, TRIPLE, 0, 6, 5, 1);
        long h = pni.depCall(0, HIDDEN, 0, 6, 0, 0);
        long m = pni.depCall(1, TRIPLE, 0, 6, 0, 0);
        return (t == 16 && h == PniStatus.NOT_FOUND && m == PniStatus.NOT_FOUND) ? Verdict.DONE : Verdict.DROP;
    }
}
