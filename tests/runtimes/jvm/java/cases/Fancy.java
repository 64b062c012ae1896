package cases;

import java.util.HashMap;
import java.util.Map;
import java.util.function.IntUnaryOperator;
import org.pan.pni.PNI;
import org.pan.pni.PanCode;

/** Lambdas, string concatenation, records, enums and collections all pass the checker. */
public final class Fancy implements PanCode {
    enum Kind { A, B }

    record Pair(int a, int b) {}

    private final Map<String, Integer> counts = new HashMap<>();

    @Override
    public int accept(PNI pni, int capsule, int length) {
        IntUnaryOperator twice = x -> x * 2;
        String key = "len" + length;
        counts.merge(key, 1, Integer::sum);
        Pair p = new Pair(length, counts.get(key));
        Kind k = length > 10 ? Kind.B : Kind.A;
        switch (k) {
            case A: return twice.applyAsInt(p.a());
            default: return twice.applyAsInt(p.a()) + p.b() + (p.toString().isEmpty() ? 1 : 0);
        }
    }
}
