// raise: accept throws
import org.pan.pni.PNI;
import org.pan.pni.PanCode;

public final class Capsule implements PanCode {
    @Override
    public int accept(PNI pni, int capsule, int length) {
        throw new IllegalStateException("accept refuses this capsule");
    }
}
