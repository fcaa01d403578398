FORM alpine
RUN true
