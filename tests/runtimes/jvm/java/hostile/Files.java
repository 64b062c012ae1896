package hostile;

import java.io.FileInputStream;
import org.pan.pni.PNI;
import org.pan.pni.PanCode;

public final class Files implements PanCode {
    @Override
    public int accept(PNI pni, int capsule, int length) {
        try (FileInputStream in = new FileInputStream("/etc/passwd")) {
            return in.read();
        } catch (Exception e) {
            return -1;
        }
    }
}
