FROM busybox
MAINTAINER Jane Doe <jane@example.com>
STOPSIGNAL SIGTERM
SHELL ["/bin/sh", "-eu", "-c"]
RUN echo $0
SHELL /bin/ash -c
