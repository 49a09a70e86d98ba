"""Shared by the loopback servers of the integration tests (not a test
itself): serve() announces the port a server got from the kernel through a
file that appears whole (written aside, then renamed), then serves forever."""
import os


def serve(server, port_file):
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, port_file)
    server.serve_forever()
