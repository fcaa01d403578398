//! A parse of the POSIX shell in RUN into simple commands.
