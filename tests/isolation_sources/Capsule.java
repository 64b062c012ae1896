// hostile: body[0] picks what accept does. 0: DONE; 9: allocate 2 GB
import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.Verdict;

public final class Capsule implements PanCode {
    private long[] hog;

    @Override
    public int accept(PNI pni, int capsule, int length) {
        if (length > 0 && pni.segGetU8(capsule, 0) == 9) {
            hog = new long[1 << 28];
            return hog.length;
        }
        return Verdict.DONE;
    }
}
