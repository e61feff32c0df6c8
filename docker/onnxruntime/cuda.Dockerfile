# Backend onnxruntime on CUDA: onnxruntime-gpu (CUDA and TensorRT providers where their
# libraries are present; the harness checks which providers a session uses) and onnx,
# layered over the default stack's torch CUDA image: its lock (docker/onnxruntime/cuda.lock.txt) pins only
# what that image lacks, resolved together with the base's own lock, so the base's torch,
# CUDA libraries and kit stay as they are. Build the base first (scripts/build-cuda-images).
# Build context: the repository root. Build arguments as in docker/torch/Dockerfile (BASE_IMAGE,
# WHEELHOUSE, PIP_EXTRA_ARGS, EXTRA_CA_BUNDLE); the BASE_IMAGE default is written by
# scripts/lock-images. The CA bundle and wheelhouse stay in the build stage.
ARG BASE_IMAGE=llm-repro-kit/torch:cuda-2.11

FROM ${BASE_IMAGE} AS build
ARG VARIANT=cuda
ARG EXTRA_CA_BUNDLE=docker/no-extra-ca.crt
ARG WHEELHOUSE=docker/empty-wheelhouse
ARG PIP_EXTRA_ARGS=
ARG TORCH_INDEX_URL=
COPY ${EXTRA_CA_BUNDLE} /tmp/extra-ca.crt
RUN cat /etc/ssl/certs/ca-certificates.crt /tmp/extra-ca.crt > /tmp/build-ca.crt
COPY docker/onnxruntime/${VARIANT}.lock.txt /etc/kit/onnxruntime.lock.txt
COPY ${WHEELHOUSE} /tmp/wheelhouse/
RUN PIP_CERT=/tmp/build-ca.crt pip install --require-hashes --no-deps --target /opt/layer \
      --find-links /tmp/wheelhouse ${PIP_EXTRA_ARGS} -r /etc/kit/onnxruntime.lock.txt

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG VARIANT=cuda
LABEL org.llm-repro-kit.image="onnxruntime" org.llm-repro-kit.variant="${VARIANT}" \
      org.llm-repro-kit.base="${BASE_IMAGE}"
COPY --from=build /opt/layer /opt/layer
COPY --from=build /etc/kit/onnxruntime.lock.txt /etc/kit/onnxruntime.lock.txt
COPY docker/fingerprint.py /opt/kit/fingerprint.py
COPY kit /opt/kit/src/kit
RUN echo /opt/layer > "$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/kit-layer.pth" \
 && mv /etc/kit/requirements.lock.txt /etc/kit/base-requirements.lock.txt \
 && cp /etc/kit/onnxruntime.lock.txt /etc/kit/requirements.lock.txt \
 && KIT_IMAGE=onnxruntime KIT_IMAGE_VARIANT="${VARIANT}" KIT_BASE_IMAGE="${BASE_IMAGE}" \
      python /opt/kit/fingerprint.py > /etc/kit/image-fingerprint.json
WORKDIR /tmp
