"""What jvm code objects may refer to: the one place the class allowlist is kept.

The checker (``pan_jvm.checker``) refuses a class file that names anything outside this
list, before any of its bytes reach the JVM; the gate class loader (``Gate.java``) refuses
the same names again at link time, so a class the checker missed still cannot resolve.

Rules, in the order the checker applies them:

1. A class may name its own jar's classes, its dependencies' classes and the generated PNI
   classes (``org.pan.pni.*``) freely. It may not define classes in ``java.*``,
   ``javax.*``, ``jdk.*``, ``sun.*`` or ``org.pan.*``.
2. Any other class must be a key of ``ALLOWED``. The value says which members are
   usable: ``ALL`` (every member except those in ``FORBIDDEN_MEMBERS``) or a frozenset
   of member names. Constructors are ``<init>``.
3. ``FORBIDDEN_MEMBERS`` names members refused on any class (``wait``, ``parallelStream``,
   ``allocateDirect``: they block, start threads or allocate outside the heap budget).
4. Methods may not be ``native``; no class may declare or call ``finalize()`` (it would
   run on the JVM's finalizer thread, outside every budget; ``PanCode.finalize(PNI)`` is
   a different method and allowed).
5. ``invokedynamic`` and ``MethodHandle`` constants may only name the bootstrap methods
   in ``BOOTSTRAPS`` (what javac emits for string concatenation, lambdas and records).
6. Exception handlers may not swallow what the watchdog stops code with (``ThreadDeath``) or
   what the lane contains (``OutOfMemoryError``, ``StackOverflowError``): a ``finally`` block
   (catch any) or a handler of a ``FORBIDDEN_CATCH`` type must rethrow the exception it
   caught, moving forward only and doing nothing that can throw in its place
   (``pan_jvm.handlers``: no calls, no field or array access, no allocation). So
   try-with-resources and ``synchronized`` blocks are refused.

What is deliberately absent: files (``java.io.File*``, ``java.nio.file``), sockets
(``java.net``, ``java.nio.channels``), reflection and method handles (``java.lang.reflect``,
``java.lang.invoke``), ``Runtime``, ``ProcessBuilder``, ``System.exit``/``getenv``/
``getProperty``/``load*``, ``Thread`` and executors, class loaders, ``sun.misc.Unsafe``,
``jdk.internal``, ``java.lang.ref``, console I/O (``System.out`` is a ``PrintStream``:
use ``pni.log``).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ALL",
    "ALLOWED",
    "FORBIDDEN_MEMBERS",
    "FORBIDDEN_CATCH",
    "BOOTSTRAPS",
    "RESERVED_PACKAGES",
    "INDY_SUPPORT",
    "PNI_PACKAGE",
    "why_refused",
]

#: marker: every member of the class is usable (except FORBIDDEN_MEMBERS)
ALL: Final = None

PNI_PACKAGE = "org/pan/pni/"

#: packages a code object may not define classes in
RESERVED_PACKAGES = ("java/", "javax/", "jdk/", "sun/", "com/sun/", "org/pan/")

_OBJECT_MEMBERS = {"<init>", "equals", "hashCode", "toString", "getClass"}

_VALUE_CLASSES = [
    "java/lang/Integer",
    "java/lang/Long",
    "java/lang/Short",
    "java/lang/Byte",
    "java/lang/Character",
    "java/lang/Boolean",
    "java/lang/Double",
    "java/lang/Float",
    "java/lang/Number",
    "java/lang/Void",
    "java/lang/Math",
    "java/lang/StrictMath",
    "java/lang/String",
    "java/lang/StringBuilder",
    "java/lang/CharSequence",
    "java/lang/Comparable",
    "java/lang/Iterable",
    "java/lang/AutoCloseable",
    "java/lang/Runnable",
    "java/lang/Enum",
    "java/lang/Record",
    "java/lang/Cloneable",
]

_EXCEPTIONS = [
    "java/lang/Exception",
    "java/lang/RuntimeException",
    "java/lang/IllegalArgumentException",
    "java/lang/IllegalStateException",
    "java/lang/IndexOutOfBoundsException",
    "java/lang/ArrayIndexOutOfBoundsException",
    "java/lang/StringIndexOutOfBoundsException",
    "java/lang/ArithmeticException",
    "java/lang/NullPointerException",
    "java/lang/ClassCastException",
    "java/lang/NegativeArraySizeException",
    "java/lang/ArrayStoreException",
    "java/lang/NumberFormatException",
    "java/lang/UnsupportedOperationException",
    "java/lang/CloneNotSupportedException",
    "java/lang/AssertionError",
    # javac's enum-switch tables catch this one
    "java/lang/NoSuchFieldError",
    "java/lang/MatchException",
    "java/util/NoSuchElementException",
    "java/util/ConcurrentModificationException",
    "java/nio/BufferOverflowException",
    "java/nio/BufferUnderflowException",
    "java/nio/ReadOnlyBufferException",
]

_COLLECTIONS = [
    "java/util/Arrays",
    "java/util/List",
    "java/util/ArrayList",
    "java/util/LinkedList",
    "java/util/ArrayDeque",
    "java/util/Deque",
    "java/util/Queue",
    "java/util/PriorityQueue",
    "java/util/Map",
    "java/util/Map$Entry",
    "java/util/HashMap",
    "java/util/LinkedHashMap",
    "java/util/TreeMap",
    "java/util/SortedMap",
    "java/util/NavigableMap",
    "java/util/Set",
    "java/util/HashSet",
    "java/util/LinkedHashSet",
    "java/util/TreeSet",
    "java/util/SortedSet",
    "java/util/Collection",
    "java/util/Collections",
    "java/util/Iterator",
    "java/util/ListIterator",
    "java/util/Comparator",
    "java/util/Objects",
    "java/util/Optional",
    "java/util/OptionalInt",
    "java/util/OptionalLong",
    "java/util/BitSet",
    "java/util/Random",
    "java/util/HexFormat",
    "java/util/zip/CRC32",
    "java/util/zip/Adler32",
    "java/util/zip/Checksum",
    "java/util/function/Function",
    "java/util/function/BiFunction",
    "java/util/function/Supplier",
    "java/util/function/Consumer",
    "java/util/function/BiConsumer",
    "java/util/function/Predicate",
    "java/util/function/IntPredicate",
    "java/util/function/IntFunction",
    "java/util/function/IntUnaryOperator",
    "java/util/function/IntBinaryOperator",
    "java/util/function/LongUnaryOperator",
    "java/util/function/LongBinaryOperator",
    "java/util/function/UnaryOperator",
    "java/util/function/BinaryOperator",
    "java/util/function/ToIntFunction",
    "java/util/function/ToLongFunction",
    "java/nio/ByteOrder",
    "java/nio/charset/StandardCharsets",
    "java/nio/charset/Charset",
]

#: class -> ALL or the member names code may use
ALLOWED: Final[dict[str, frozenset[str] | None]] = {
    **{name: ALL for name in _VALUE_CLASSES + _EXCEPTIONS + _COLLECTIONS},
    "java/lang/Object": frozenset(_OBJECT_MEMBERS | {"clone"}),
    # Throwable is every exception's superclass; catching it is refused separately
    "java/lang/Throwable": frozenset(
        _OBJECT_MEMBERS
        | {"getMessage", "getLocalizedMessage", "getCause", "initCause", "addSuppressed", "getSuppressed"}
    ),
    "java/lang/System": frozenset({"arraycopy", "nanoTime", "currentTimeMillis", "identityHashCode"}),
    "java/lang/Class": frozenset(
        {
            "getName",
            "getSimpleName",
            "isInstance",
            "cast",
            "desiredAssertionStatus",
            "equals",
            "hashCode",
            "toString",
        }
    ),
    # heap buffers only: allocateDirect is refused through FORBIDDEN_MEMBERS
    "java/nio/Buffer": ALL,
    "java/nio/ByteBuffer": ALL,
    "java/nio/IntBuffer": ALL,
    "java/nio/LongBuffer": ALL,
    "java/nio/ShortBuffer": ALL,
    "java/nio/CharBuffer": ALL,
}

FORBIDDEN_MEMBERS: Final = frozenset(
    {
        "wait",
        "notify",
        "notifyAll",
        "parallelStream",
        "parallel",
        "parallelSort",
        "parallelPrefix",
        "parallelSetAll",
        "allocateDirect",
        "forName",
    }
)

FORBIDDEN_CATCH: Final = frozenset(
    {
        "java/lang/Throwable",
        "java/lang/Error",
        "java/lang/ThreadDeath",
        "java/lang/VirtualMachineError",
        "java/lang/OutOfMemoryError",
        "java/lang/StackOverflowError",
        "java/lang/InternalError",
        "java/lang/UnknownError",
    }
)

#: (class, method) pairs allowed as invokedynamic bootstrap methods
BOOTSTRAPS: Final = frozenset(
    {
        ("java/lang/invoke/StringConcatFactory", "makeConcatWithConstants"),
        ("java/lang/invoke/StringConcatFactory", "makeConcat"),
        ("java/lang/invoke/LambdaMetafactory", "metafactory"),
        ("java/lang/invoke/LambdaMetafactory", "altMetafactory"),
        ("java/lang/runtime/ObjectMethods", "bootstrap"),
    }
)

#: classes the JVM itself resolves through the code's loader to link those bootstraps;
#: the gate loader lets them through, the checker refuses any member use of them
INDY_SUPPORT: Final = frozenset(
    {
        "java/lang/invoke/StringConcatFactory",
        "java/lang/invoke/LambdaMetafactory",
        "java/lang/runtime/ObjectMethods",
        "java/lang/invoke/MethodHandles$Lookup",
        "java/lang/invoke/MethodHandles",
        "java/lang/invoke/MethodHandle",
        "java/lang/invoke/MethodType",
        "java/lang/invoke/CallSite",
        "java/lang/invoke/TypeDescriptor",
        "java/lang/invoke/LambdaForm$Hidden",
        "java/lang/invoke/LambdaForm$Compiled",
        "jdk/internal/vm/annotation/Hidden",
    }
)

_REASONS = (
    ("java/lang/Runtime", "runs processes and exits the JVM"),
    ("java/lang/ProcessBuilder", "runs processes"),
    ("java/lang/Process", "runs processes"),
    ("java/lang/Thread", "creates threads outside the watchdog"),
    ("java/lang/ThreadGroup", "creates threads outside the watchdog"),
    ("java/util/concurrent/", "executors create threads outside the watchdog"),
    ("java/util/Timer", "creates threads outside the watchdog"),
    ("java/lang/reflect/", "reflection bypasses the allowlist"),
    ("java/lang/invoke/", "method handles bypass the allowlist"),
    ("java/lang/ClassLoader", "defines classes outside the checker"),
    ("java/lang/ref/", "references and cleaners run code on JVM threads"),
    ("java/io/", "file and console I/O"),
    ("java/nio/file/", "file access"),
    ("java/nio/channels/", "file and socket access"),
    ("java/net/", "network access bypasses the node"),
    ("sun/misc/Unsafe", "raw memory access"),
    ("jdk/internal/", "JDK internals"),
    ("sun/", "JDK internals"),
)


def why_refused(class_name: str) -> str:
    """A short explanation for a class that is not allowed (for error messages)."""
    for prefix, reason in _REASONS:
        if class_name.startswith(prefix):
            return reason
    return "not on the jvm allowlist (pan_jvm.allowlist)"
