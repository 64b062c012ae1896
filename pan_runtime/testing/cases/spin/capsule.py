# spin: never returns, and tries to swallow whatever stops it


def accept(pni, capsule, length):
    n = 0
    while True:
        try:
            while True:
                n = (n + 1) % 1000
        except Exception:
            n = 0
