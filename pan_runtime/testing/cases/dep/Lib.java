// dep library: exports triple; hidden answers only when asked by name, but is not in the manifest
import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.PniStatus;
import org.pan.pni.Verdict;

public final class Lib implements PanCode {
    @Override
    public int accept(PNI pni, int capsule, int length) {
        return Verdict.DROP;
    }

    @Override
    public long export(PNI pni, String name, long a0, long a1) {
        if (name.equals("triple")) return 3 * a0 + a1;
        if (name.equals("hidden")) return 99;
        return PniStatus.NOT_FOUND;
    }
}
