// chatty: each capsule writes 100 warning lines, each with a newline and an escape in it.
import java.nio.charset.StandardCharsets;
import org.pan.pni.PNI;
import org.pan.pni.PanCode;
import org.pan.pni.Verdict;

public final class Chatty implements PanCode {
    private static final byte[] LINE =
        "chatty line\n2026-01-01 00:00:00 pan.node ERROR forged\u001b[31m".getBytes(StandardCharsets.UTF_8);

    @Override
    public int accept(PNI pni, int capsule, int length) {
        for (int i = 0; i < 100; i++) {
            pni.log(30, LINE, 0, LINE.length);
        }
        return Verdict.DONE;
    }
}
