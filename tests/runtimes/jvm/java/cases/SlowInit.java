package cases;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

/** A constructor that never returns: loading it always runs past the load budget. */
public final class SlowInit implements PanCode {
    public static volatile long sink;

    public SlowInit() {
        while (sink >= 0) sink++;
    }

    @Override
    public int accept(PNI pni, int capsule, int length) {
        return 0;
    }
}
