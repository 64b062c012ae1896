package cases;

import org.pan.pni.PNI;
import org.pan.pni.PanCode;

/**
 * The handler shapes the checker accepts: a finally that only updates locals, a catch of
 * Throwable that rethrows what it caught, a finally inside a loop, a catch of an ordinary
 * exception that returns. A long length spins inside the try: the stop passes through.
 */
public final class Finally implements PanCode {
    public static volatile long sink;

    @Override
    public int accept(PNI pni, int capsule, int length) {
        int total = 0;
        for (int i = 0; i < 3; i++) {
            int n = 0;
            try {
                n = work(length);
            } finally {
                total += i;
            }
            total += n;
        }
        try {
            total += parse(length);
        } catch (Throwable t) {
            total = -1;
            throw t;
        }
        return total;
    }

    private static int work(int length) {
        if (length > 1000) {
            while (length > 0) sink++;
        }
        return length;
    }

    private static int parse(int length) {
        try {
            return Integer.parseInt("x" + length);
        } catch (NumberFormatException e) {
            return 100;
        }
    }
}
