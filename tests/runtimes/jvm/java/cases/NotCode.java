package cases;

public final class NotCode {
    public int accept(Object pni, int capsule, int length) {
        return 2;
    }
}
