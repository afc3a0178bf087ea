// express@4 installed under an alias, so both majors are tested side by side.
declare module 'express4' {
  import express from 'express';
  export default express;
}
