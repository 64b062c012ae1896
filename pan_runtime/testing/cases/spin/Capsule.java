// spin: never returns
import org.pan.pni.PNI;
import org.pan.pni.PanCode;

public final class Capsule implements PanCode {
    private long n;

    @Override
    public int accept(PNI pni, int capsule, int length) {
        while (true) {
            n = n * 6364136223846793005L + 1442695040888963407L;
        }
    }
}
