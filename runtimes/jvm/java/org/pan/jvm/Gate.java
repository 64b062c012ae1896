package org.pan.jvm;

import java.util.HashSet;
import java.util.Set;

/**
 * The parent of every code object's loader: lets through only the allowlisted JDK classes
 * (pan_jvm.allowlist, pushed in at start-up) and the generated org.pan.pni classes.
 * Anything else fails to link with ClassNotFoundException, whatever the class file says.
 */
public final class Gate extends ClassLoader {
    private final Set<String> allowed = new HashSet<>();
    private volatile String lastRefused;

    public Gate(ClassLoader parent, String[] allowedNames) {
        super(parent);
        for (String n : allowedNames) allowed.add(n);
    }

    public boolean allows(String name) {
        return name.startsWith("org.pan.pni.") || allowed.contains(name);
    }

    /** The last class name this gate refused (for error messages), or null. */
    public String lastRefused() {
        return lastRefused;
    }

    @Override
    protected Class<?> loadClass(String name, boolean resolve) throws ClassNotFoundException {
        if (!allows(name)) {
            lastRefused = name;
            throw new ClassNotFoundException(name + " is not on the jvm allowlist");
        }
        return super.loadClass(name, resolve);
    }

    @Override
    protected Class<?> findClass(String name) throws ClassNotFoundException {
        throw new ClassNotFoundException(name);
    }
}
