// spin: accept never returns on its own; only the node's budget ends the call.
import org.pan.pni.PNI;
import org.pan.pni.PanCode;

public final class Spin implements PanCode {
    private int n;

    @Override
    public int accept(PNI pni, int capsule, int length) {
        n = length;
        for (;;) {
            n = n * 1664525 + 1013904223;
        }
    }
}
