package hostile;

import java.net.Socket;
import org.pan.pni.PNI;
import org.pan.pni.PanCode;

public final class Sock implements PanCode {
    @Override
    public int accept(PNI pni, int capsule, int length) {
        try (Socket s = new Socket("127.0.0.1", 9)) {
            return 1;
        } catch (Exception e) {
            return -1;
        }
    }
}
