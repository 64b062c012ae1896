package hostile;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

/** try-with-resources: its handler calls close(), and whatever close() throws is swallowed. */
public final class WithResources implements PanCode {
    static final class Res implements AutoCloseable {
        @Override
        public void close() {}
    }

    @Override
    public int accept(PNI pni, int capsule, int length) {
        try (Res r = new Res()) {
            return length;
        }
    }
}
